-- Which of the given users have any event in the warehouse (`reelsense score --users` names the
-- others instead of dropping them silently). $users: the user ids asked for.
SELECT DISTINCT user_id
FROM events
WHERE list_contains($users, user_id)
ORDER BY user_id
