// Uniqueness of Model ids (model:<hash16>).
// params: none
CREATE CONSTRAINT model_id IF NOT EXISTS FOR (n:Model) REQUIRE n.id IS UNIQUE
