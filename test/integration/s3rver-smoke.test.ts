import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalS3, startLocalS3 } from "../helpers/s3rver.ts";

let s3: LocalS3;
beforeAll(async () => {
  s3 = await startLocalS3();
});
afterAll(async () => s3?.close());

describe("s3rver on loopback", () => {
  it("stores and returns an object and emits an ObjectCreated event", async () => {
    const events: string[] = [];
    s3.server.on("event", (e: { Records: Array<{ eventName: string; s3: { object: { key: string } } }> }) =>
      events.push(`${e.Records[0].eventName} ${e.Records[0].s3.object.key}`),
    );
    const client = new S3Client({
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: "us-east-1",
      credentials: s3.credentials,
    });
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: "corpus/a.txt", Body: "hello" }));
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: "corpus/a.txt" }));
    expect(await got.Body?.transformToString()).toBe("hello");
    expect(events).toEqual(["ObjectCreated:Put corpus/a.txt"]);
  });
});
