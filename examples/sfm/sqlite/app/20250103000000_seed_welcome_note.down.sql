DELETE FROM notes WHERE id = 1;
