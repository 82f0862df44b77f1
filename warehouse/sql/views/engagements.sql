-- engagements: the events in which a user engaged with an item: any event other than a bare
-- impression (watch, like, comment, share), at any time. Scoring never recommends an item the user
-- engaged with, and `explain` says so of such a pair; the ranker evaluation's "history masked"
-- protocol masks the same set (ranker/evaluate.py, over the materialised sequences).
SELECT * FROM events WHERE event <> 'impression'
