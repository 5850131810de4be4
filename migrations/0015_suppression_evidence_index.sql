-- The suppressions subscriber needs only receipts and rejections, a small share of the log. It used
-- to find them by reading the type of every event row after its checkpoint: one more full pass over
-- the log, on top of the projector's and the saga's, for a few bounces (about 12% more database CPU
-- per delivered message). This partial index holds just those rows, so the subscriber reads them
-- alone; its checkpoint moves past the rest through the tail index (events_tail_idx).
-- The predicate must stay textually the same as the query in event_store::read_suppression_evidence.
CREATE INDEX events_suppression_evidence_idx ON events (tx_id, position)
    WHERE stream_type = 'message' AND event_type IN ('ReceiptRecorded', 'AttemptRejected');
