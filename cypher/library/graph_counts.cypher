// Count nodes by label and relationships by type (export summary, tests).
// params: none
// returns: kind ('node' or 'relationship'), name, n
CALL () {
  MATCH (n)
  UNWIND labels(n) AS name
  RETURN 'node' AS kind, name, count(*) AS n
  UNION ALL
  MATCH ()-[r]->()
  RETURN 'relationship' AS kind, type(r) AS name, count(*) AS n
}
RETURN kind, name, n
ORDER BY kind, name
