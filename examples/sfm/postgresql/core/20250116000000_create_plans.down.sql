DROP TABLE IF EXISTS organization_plans;
DROP TABLE IF EXISTS plans;
