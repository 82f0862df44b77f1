-- quarantined_items: what extract-items holds against each item's current content, and why, one row
-- per item and stage (the latest):
--   'extract-items': undecodable media. Every run skips the item (sql/analysis/failed_extractions.sql
--     reads this view) until its media are fixed and it is ingested again, or `extract --force` gets
--     a frames or audio vector out of it.
--   'extract-items:<modality>:encoder': the encoder (its model in the record; failures written before
--     it was recorded: any model of that modality) refused the item's input. Tried again on each run;
--     listed until that model writes the item's vector.
-- Left out: failures of an item's earlier content, those it got past since (a vector made after the
-- failure as above; `aligned@` vectors are made from others and answer nothing), and no-audio records.
-- A failure repeated word for word is stored once (the `failures` key), with its first failed_at.
-- Every failure stays in `failures`.
SELECT f.item_id, i.content_hash, f.stage, f.error, f.failed_at
FROM failures f
JOIN items i ON i.item_id = f.item_id AND i.content_hash = json_extract_string(f.record, '$.content_hash')
WHERE (f.stage = 'extract-items' OR f.stage LIKE 'extract-items:%:encoder')
  AND NOT EXISTS (
      SELECT 1 FROM embeddings e
      WHERE e.item_id = f.item_id AND e.content_hash = i.content_hash AND e.created_at > f.failed_at
        AND NOT starts_with(e.model, 'aligned@')
        AND CASE
            WHEN f.stage = 'extract-items' THEN e.modality IN ('frames', 'audio')
            ELSE e.modality = split_part(f.stage, ':', 2)
                AND e.model = coalesce(json_extract_string(f.record, '$.model'), e.model)
        END
  )
QUALIFY row_number() OVER (PARTITION BY f.item_id, f.stage ORDER BY f.failed_at DESC) = 1
