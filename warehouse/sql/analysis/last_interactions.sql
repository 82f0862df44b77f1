-- $users: the time (epoch seconds) of each user's latest event with each item.
SELECT user_id, item_id, epoch(max(event_ts)) AS ts FROM events WHERE list_contains($users, user_id) GROUP BY ALL
