// Delete every node and relationship (tests and `demo --fresh`); the schema stays.
// params: none
// returns: nothing
MATCH (n) DETACH DELETE n
