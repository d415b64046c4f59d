-- The search index, version 3. Nothing to do on PostgreSQL: the PostgreSQL deployment keeps its
-- search index in Qdrant (planned), not in the database. This file exists so both migration
-- folders carry the same versions; see migrations/sqlite/0003_search_index.sql.
SELECT 1;
