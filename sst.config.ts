// SST app: `npx sst deploy --stage <stage>`. The resources live in infra/, one file per concern;
// stage settings come from DEPLOY_* variables (infra/config.ts). Types for the SST globals used
// here are in infra/sst-platform.d.ts (SST's generated .sst/platform/config.d.ts does not exist
// until the CLI has run). See docs/DEPLOY.md.
export default $config({
  app(input) {
    return {
      name: "two-stage-retrieval",
      home: "aws",
      // A production stage keeps its bucket (corpus, snapshots, models) on `sst remove`.
      removal: input?.stage === "prod" || input?.stage === "production" ? "retain" : "remove",
      providers: { aws: { region: process.env.AWS_REGION ?? "us-east-1" } },
    };
  },
  async run() {
    const { settings } = await import("./infra/config.ts");
    const { bucket } = await import("./infra/storage.ts");
    const { reranker, rerankerService } = await import("./infra/reranker.ts");
    const { shardFunctions } = await import("./infra/shards.ts");
    const { api } = await import("./infra/api.ts");
    await import("./infra/reindex.ts");
    return {
      api: api.url,
      bucket: bucket.name,
      reranker: reranker?.name ?? rerankerService?.url ?? settings.reranker.externalUrl,
      ...(shardFunctions.length ? { indexShards: shardFunctions.map((f) => f.name) } : {}),
    };
  },
});
