//! The built-in mock provider. See `server` (the fake provider) and `client` (Hermes's side).
