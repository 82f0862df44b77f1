-- $stage: the (item, content_hash) pairs a stage of extract-items holds back: 'extract-items'
-- (undecodable media, as the view quarantined_items lists them: the one rule of what is quarantined)
-- or 'extract-items:audio' (no audio track: recorded, never quarantined).
SELECT item_id, content_hash AS h FROM quarantined_items WHERE stage = $stage AND stage = 'extract-items'
UNION ALL
SELECT item_id, json_extract_string(record, '$.content_hash') AS h FROM failures WHERE stage = $stage AND stage = 'extract-items:audio'
