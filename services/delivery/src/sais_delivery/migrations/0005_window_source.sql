-- A child goes out in the window of the source that first put it in a programme. A later source (an
-- October census matching a child of the May census) updates the child within that window, as an
-- update batch of that window, and never moves it to another window.
ALTER TABLE delivery.members ADD COLUMN IF NOT EXISTS window_source text NOT NULL DEFAULT '';
UPDATE delivery.members SET window_source = source WHERE window_source = '';
