-- quarantined_items: what extract-items quarantined in each item's current content, and why, one
-- row per item and stage (the latest): undecodable media (stage 'extract-items': a rerun skips the
-- item until its media is fixed and it is ingested again, or `extract --force` gets past it) and an
-- encoder that refused one modality (stage 'extract-items:<modality>:encoder', tried again on each
-- run). Left out: failures of an item's earlier content, and those an item got past since (media:
-- a frames or audio vector made after it; an encoder: a vector of its modality made after it).
-- Every failure stays in `failures`.
SELECT f.item_id, f.stage, f.error, f.failed_at
FROM failures f
JOIN items i ON i.item_id = f.item_id AND i.content_hash = json_extract_string(f.record, '$.content_hash')
WHERE (f.stage = 'extract-items' OR f.stage LIKE 'extract-items:%:encoder')
  AND NOT EXISTS (
      SELECT 1 FROM embeddings e
      WHERE e.item_id = f.item_id AND e.content_hash = i.content_hash AND e.created_at > f.failed_at
        AND CASE WHEN f.stage = 'extract-items' THEN e.modality IN ('frames', 'audio') ELSE e.modality = split_part(f.stage, ':', 2) END
  )
QUALIFY row_number() OVER (PARTITION BY f.item_id, f.stage ORDER BY f.failed_at DESC) = 1
