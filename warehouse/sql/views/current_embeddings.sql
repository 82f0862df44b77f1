-- current_embeddings: the vectors of each item's current content, i.e. embeddings whose
-- content_hash is the one the `items` view holds now. Vectors of earlier versions stay in
-- `embeddings` (history is never rewritten) but no ranker, alignment or tag reads them. The item's
-- current title comes along, for queries that show what they found.
SELECT e.*, i.title
FROM embeddings e
JOIN items i ON i.item_id = e.item_id AND i.content_hash = e.content_hash
