// The indexes present, for `db init` reports and idempotency checks.
// params: none
// returns: name, type, entityType, labelsOrTypes, properties
SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties
RETURN name, type, entityType, labelsOrTypes, properties
