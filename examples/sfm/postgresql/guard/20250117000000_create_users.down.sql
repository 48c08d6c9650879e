DROP TABLE IF EXISTS user_organizations;
DROP TABLE IF EXISTS users;
