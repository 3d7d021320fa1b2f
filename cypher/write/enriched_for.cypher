// Significant enrichments of a feature's top genes in a gene set (one per feature and set).
// params: $rows: [{feature (feature id), gene_set (gene set id), library, p, q, odds, overlap, genes}]
// returns: n (rows written)
UNWIND $rows AS r
MATCH (f:Feature {id: r.feature})
MATCH (s:GeneSet {id: r.gene_set})
MERGE (f)-[e:ENRICHED_FOR]->(s)
SET e.library = r.library, e.p = r.p, e.q = r.q, e.odds = r.odds, e.overlap = r.overlap, e.genes = r.genes
RETURN count(*) AS n
