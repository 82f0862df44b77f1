-- $run: the (user, item) pairs a score-batch run wrote, by user and rank.
SELECT user_id, item_id FROM scores WHERE run_id = $run ORDER BY user_id, rank
