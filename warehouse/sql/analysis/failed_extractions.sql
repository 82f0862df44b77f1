-- $stage: the (item, content_hash) pairs a stage of extract-items quarantined.
SELECT item_id, json_extract_string(record, '$.content_hash') AS h FROM failures WHERE stage = $stage
