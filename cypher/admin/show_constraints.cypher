// The schema constraints present, for `db init` reports and idempotency checks.
// params: none
// returns: name, type, entityType, labelsOrTypes, properties
SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties
RETURN name, type, entityType, labelsOrTypes, properties
