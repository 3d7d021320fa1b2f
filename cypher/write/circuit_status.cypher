// Which of the given circuits are stored, with their content hash and completeness.
// params: $ids (list of circuit ids)
// returns: id, content_hash, complete
MATCH (c:Circuit)
WHERE c.id IN $ids
RETURN c.id AS id, c.content_hash AS content_hash, c.complete AS complete
