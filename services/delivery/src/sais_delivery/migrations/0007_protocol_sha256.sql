-- The exact protocol text a batch was prepared and sent under (sha256, as in shared.protocols), so the
-- audit trail ties every transfer to the one file in force (ISP security review, finding 3).
ALTER TABLE delivery.batches ADD COLUMN protocol_sha256 text;
