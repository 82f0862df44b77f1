-- The items extract-items plans over: the current version of each, with its media and content hash.
SELECT item_id, title, video_uri, audio_uri, content_hash FROM items ORDER BY item_id
