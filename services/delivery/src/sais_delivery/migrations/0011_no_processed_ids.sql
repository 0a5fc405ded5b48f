-- Delivery no longer keeps the id of every cohort event it applied (issue 28): a member changes only for
-- a revision newer than the one it holds, and a withdrawal only withdraws a member it holds, so an event
-- applied twice changes nothing. The table was a second record of what the members already say, written
-- for every event.
DROP TABLE delivery.processed;
