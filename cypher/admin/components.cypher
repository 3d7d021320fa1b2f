// Server name, versions and edition (Neo4j; ArcadeDB answers as a Neo4j kernel).
// params: none
// returns: name, versions, edition
CALL dbms.components() YIELD name, versions, edition
RETURN name, versions, edition
