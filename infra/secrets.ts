// Secrets live in SST's encrypted store (`npx sst secret set <Name> <value> --stage <stage>`).
// Linked functions read them as Resource.<Name>.value, decrypted from the function package at
// cold start: they never appear as plain environment variables or in this repository.
import { settings } from "./config.ts";

/**
 * Query and document embeddings (text-embedding-3-small). Optional: unset (the empty placeholder),
 * EMBEDDER=auto picks the offline use-lite+hashing embedder the functions carry, so a first deploy
 * needs no third-party account. Setting it later makes the next reindex rebuild with OpenAI.
 */
export const openAiApiKey = new sst.Secret("OpenAiApiKey", "");

/**
 * Bearer token for the HTTP reranker: the GPU service checks it, the search function sends it.
 * Required for the GPU service (its load balancer is public); optional for an external URL
 * that needs none, hence the empty placeholder there.
 */
export const rerankerToken =
  settings.reranker.backend === "gpu"
    ? new sst.Secret("RerankerToken")
    : settings.reranker.backend === "external"
      ? new sst.Secret("RerankerToken", "")
      : undefined;
