DROP TABLE IF EXISTS {{.Schema}}.settings;
