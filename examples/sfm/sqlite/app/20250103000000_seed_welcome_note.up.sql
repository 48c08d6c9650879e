-- bfm-tags: area=notes, kind=seed
INSERT INTO notes (id, title, body) VALUES (1, 'Welcome', 'Written by migration {{.Version}} in environment {{.Environment}}');
INSERT INTO note_tags (note_id, tag) VALUES (1, 'welcome');
