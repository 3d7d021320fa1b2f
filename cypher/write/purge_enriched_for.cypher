// Delete the ENRICHED_FOR relationships of the given features (before writing a new interpretation of them).
// params: $ids (feature ids)
// returns: n (relationships deleted)
UNWIND $ids AS id
MATCH (:Feature {id: id})-[e:ENRICHED_FOR]->()
DELETE e
RETURN count(*) AS n
