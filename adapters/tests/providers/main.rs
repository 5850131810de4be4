//! The provider plugins against the providers' own specifications: each plugin's requests go to
//! Prism serving that provider's official OpenAPI document (`../shared/provider-specs`), which
//! refuses any request the document does not allow; receipts are the providers' documented
//! examples, signed by the documented algorithms.
//!
//! One test binary for every provider (one link of wasmtime instead of six); a module per provider.

mod support;

mod fcm;
mod messente;
mod ses;
mod twilio;
mod vonage;
mod whatsapp;
