-- Rows valid but not requested from their source (ISP §6.1) are listed by row number in the extract's
-- report, beside its rejected and warning rows: a data officer sees which rows were left out, and why.
ALTER TABLE ingest.row_problems DROP CONSTRAINT row_problems_kind_check;
ALTER TABLE ingest.row_problems ADD CONSTRAINT row_problems_kind_check
    CHECK (kind IN ('rejected', 'warning', 'out-of-scope'));
