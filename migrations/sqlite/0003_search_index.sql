-- The embedded search index (SQLite): full-text search over chunks, and the exact embeddings
-- used to rescore vector candidates. The binary-quantised vector table (sqlite-vec `vec0`) is
-- created by the index when it opens, because its width is `embeddings.dimensions`.
-- Keep the file name in step with migrations/postgres/0003_search_index.sql.

-- One row per chunk, rowid = chunks.id. Contentless (the text lives in `chunks`), with
-- deletes allowed. `brain` holds the token `b<brain id>` so a search matches
-- `brain : "b7" AND {heading text} : (...)` and never touches other brains' postings.
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    brain,
    heading,
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Triggers keep the full-text rows in step with `chunks` whoever changes them, including the
-- cascades of deleting a document or a brain.
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, brain, heading, text)
    VALUES (new.id, 'b' || new.brain_id, COALESCE(new.heading, ''), new.text);
END;

CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM chunks_fts WHERE rowid = old.id;
END;

CREATE TRIGGER chunks_fts_update AFTER UPDATE OF brain_id, heading, text ON chunks BEGIN
    DELETE FROM chunks_fts WHERE rowid = old.id;
    INSERT INTO chunks_fts (rowid, brain, heading, text)
    VALUES (new.id, 'b' || new.brain_id, COALESCE(new.heading, ''), new.text);
END;

-- A chunk's embedding as little-endian f32, for exact rescoring of the candidates the
-- quantised vector search finds. Cascades with the chunk.
CREATE TABLE chunk_vectors (
    chunk_id   INTEGER PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    embedding  BLOB    NOT NULL
);

-- Document frequency of every indexed term, so a search can leave out terms so common that
-- they would make it walk most of a brain for almost no BM25 weight.
CREATE VIRTUAL TABLE chunks_fts_terms USING fts5vocab(chunks_fts, 'row');
