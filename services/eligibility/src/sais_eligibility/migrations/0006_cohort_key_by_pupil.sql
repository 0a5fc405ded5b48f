-- The cohort's key leads with the child: (academic year, pupil, programme). A release chunk reads its
-- children's memberships by (academic year, pupil), which the key now serves, so the second index that did
-- (cohort_pupil) goes: one index fewer to keep on every membership written, 237,000 a run at 100,000 pupils
-- (issue 28). ON CONFLICT (academic_year, programme, pupil_id) still finds the key: the same columns.
ALTER TABLE eligibility.cohort DROP CONSTRAINT cohort_pkey;
ALTER TABLE eligibility.cohort ADD CONSTRAINT cohort_pkey PRIMARY KEY (academic_year, pupil_id, programme);
DROP INDEX eligibility.cohort_pupil;
