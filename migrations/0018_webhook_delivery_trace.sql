-- The trace context of the event a webhook delivery gives notice of: the delivery's span
-- continues the message's trace (NULL when the event had none).
ALTER TABLE webhook_deliveries ADD COLUMN traceparent text;
