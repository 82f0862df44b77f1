-- An item's title and media as `items` holds them now (explain says that an item with none of
-- them has nothing to embed). $item: the item id.
SELECT title, video_uri, audio_uri
FROM items
WHERE item_id = $item
