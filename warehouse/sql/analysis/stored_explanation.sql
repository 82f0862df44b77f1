-- $user, $item, $run: the explanation of the pair stored for that run (`reelsense report` stores them).
SELECT e.*
FROM explanations e
WHERE e.user_id = $user AND e.item_id = $item AND e.run_id = $run
LIMIT 1
