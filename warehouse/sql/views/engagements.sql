-- engagements: the events in which a user engaged with an item: any event other than a bare
-- impression (watch, like, comment, share), at any time. Scoring never recommends an item the user
-- engaged with (analysis/engaged_items.sql), and `explain` says so of such a pair (known_pair.sql).
-- The same rule, over the materialised sequences rather than `events`, is `hist_events >
-- EVENT_INDEX["impression"]` in Python: ranker/evaluate.py's masked protocol (earlier_items, which
-- leaves out a weak watch older than the history window), ranker/coldstart.py and
-- benchmarks/microlens.py's slices.
SELECT * FROM events WHERE event <> 'impression'
