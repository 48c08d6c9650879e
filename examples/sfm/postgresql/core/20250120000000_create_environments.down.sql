DROP TABLE IF EXISTS environments;
