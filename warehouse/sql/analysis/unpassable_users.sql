-- Users whose ids `reelsense score --users` cannot pass, as it splits at commas and trims each id:
-- a comma in the id, or spaces at an end. Read only where an id given to --users has no events,
-- to say which stored ids it was cut from.
SELECT DISTINCT user_id
FROM events
WHERE contains(user_id, ',') OR user_id <> trim(user_id)
ORDER BY user_id
