// Uniqueness of GeneSet ids ("{library}:{name}"), the targets of ENRICHED_FOR.
// params: none
CREATE CONSTRAINT gene_set_id IF NOT EXISTS FOR (n:GeneSet) REQUIRE n.id IS UNIQUE
