-- Findings that no longer hold (a later source named the school of a child whose school was not
-- yet known) are cleared per child.
CREATE INDEX findings_pupil ON eligibility.findings (academic_year, pupil_id);
