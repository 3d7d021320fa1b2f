// Uniqueness of TranscoderSet ids (tc:<hash16>).
// params: none
CREATE CONSTRAINT transcoder_set_id IF NOT EXISTS FOR (n:TranscoderSet) REQUIRE n.id IS UNIQUE
