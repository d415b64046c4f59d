-- Which embedding model made the vectors in the index: per brain (with their width) and per
-- document, so a changed model is noticed, the documents embedded with another are searched
-- by keywords only until they are embedded again, and re-embedding can be queued for them.
-- NULL: embedded before this was recorded, or never embedded.
-- Keep in step with migrations/sqlite/0007_embedding_model.sql.
ALTER TABLE brains ADD COLUMN embedding_model TEXT;
ALTER TABLE brains ADD COLUMN embedding_dimensions BIGINT;
ALTER TABLE documents ADD COLUMN embedding_model TEXT;
