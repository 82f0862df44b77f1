-- $item: why extract holds the item back now (the view quarantined_items), one row per stage:
-- 'extract-items' (undecodable media: skipped until fixed and ingested again) or
-- 'extract-items:<modality>:encoder' (an encoder refused its input: tried again on each run).
SELECT stage, error
FROM quarantined_items
WHERE item_id = $item
ORDER BY stage
