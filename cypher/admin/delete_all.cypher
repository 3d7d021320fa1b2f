// Delete every node and relationship, keeping the schema. For tests on small graphs only
// (one transaction); no command runs it.
// params: none
// returns: nothing
MATCH (n) DETACH DELETE n
