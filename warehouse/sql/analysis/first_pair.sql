-- $run: the first user's rank-1 item of a score-batch run (the pair the demo explains).
SELECT user_id, item_id FROM scores WHERE run_id = $run AND rank = 1 ORDER BY user_id LIMIT 1
