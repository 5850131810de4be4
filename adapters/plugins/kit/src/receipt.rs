//! What a receipt says about its message, in the kit's terms: every plugin that reads receipts
//! (callbacks or status lookups) maps the provider's statuses onto [`Status`], and
//! [`receipt_glue!`](crate::receipt_glue) converts it to the plugin's generated WIT type.

/// The delivery status a receipt reports. SES and Vonage only ever report `Delivered` and
/// `Failed`; the others also report `Sent` and `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// The conversions from the kit's receipt types to a plugin's generated ones: `From<Status> for
/// ReceiptStatus` and `From<(code, message)> for ReceiptError`. Call it at the top level of the
/// `lib.rs` of a plugin that reads receipts, with `ReceiptStatus` and `ReceiptError` in scope.
#[macro_export]
macro_rules! receipt_glue {
    () => {
        impl From<$crate::Status> for ReceiptStatus {
            fn from(status: $crate::Status) -> Self {
                match status {
                    $crate::Status::Sent => ReceiptStatus::Sent,
                    $crate::Status::Delivered => ReceiptStatus::Delivered,
                    $crate::Status::Read => ReceiptStatus::Read,
                    $crate::Status::Failed => ReceiptStatus::Failed,
                }
            }
        }

        /// A provider's error code and message.
        impl From<(String, String)> for ReceiptError {
            fn from((code, message): (String, String)) -> Self {
                ReceiptError { code, message }
            }
        }
    };
}
