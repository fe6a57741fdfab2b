// Ambient types for the SST globals that sst.config.ts and infra/*.ts use.
//
// The SST CLI generates the real declarations in .sst/platform/config.d.ts (referenced with
// `/// <reference path="./.sst/platform/config.d.ts" />`), but it cannot run here: it downloads
// Pulumi. So `tsc --noEmit` checks infra/ against this hand-written subset instead, and
// sst.config.ts carries no reference to .sst. Shapes follow SST's component docs
// (platform/src/components/aws/{function,bucket,apigatewayv2,service}.ts, components/secret.ts);
// only the properties infra/ uses are declared, so a typo there is a type error here.
export {};

declare global {
  /** A value that is only known during deploy (Pulumi Output). */
  interface SstOutput<T> {
    apply<U>(fn: (value: T) => U): SstOutput<U>;
  }
  type SstInput<T> = T | Promise<T> | SstOutput<T>;
  type SstSize = `${number} MB` | `${number} GB`;
  type SstDuration = `${number} ${"second" | "seconds" | "minute" | "minutes"}`;

  interface SstAppInput {
    stage?: string;
  }
  interface SstAppConfig {
    name: string;
    home: "aws";
    removal?: "remove" | "retain" | "retain-all";
    protect?: boolean;
    providers?: Record<string, unknown>;
  }
  interface SstConfig {
    app(input?: SstAppInput): SstAppConfig;
    run(): Promise<Record<string, unknown> | undefined>;
  }

  function $config(config: SstConfig): SstConfig;
  const $app: { readonly name: string; readonly stage: string };
  /** True under `sst dev`: functions run locally (Live) and services are not deployed. */
  const $dev: boolean;
  function $interpolate(strings: TemplateStringsArray, ...values: unknown[]): SstOutput<string>;
  /** JSON.stringify once every Output inside the value has resolved. */
  function $jsonStringify(value: unknown): SstOutput<string>;

  /** The Pulumi AWS provider (@pulumi/aws), for resources SST has no component for. */
  namespace aws {
    namespace iam {
      class Role {
        constructor(name: string, args: { assumeRolePolicy: SstInput<string>; description?: string });
        readonly arn: SstOutput<string>;
        readonly id: SstOutput<string>;
      }
      class RolePolicy {
        constructor(name: string, args: { role: SstInput<string>; policy: SstInput<string> });
      }
    }
    namespace sfn {
      class StateMachine {
        constructor(
          name: string,
          args: {
            name?: string;
            roleArn: SstInput<string>;
            definition: SstInput<string>;
            type?: "STANDARD" | "EXPRESS";
          },
        );
        readonly arn: SstOutput<string>;
      }
    }
    namespace ssm {
      class Parameter {
        constructor(
          name: string,
          args: { type: "String" | "SecureString"; value: SstInput<string>; description?: string },
        );
        readonly arn: SstOutput<string>;
      }
    }
  }

  namespace sst {
    /** Links a resource SST has no component for: linked functions read `properties` and get `include`'s permissions. */
    class Linkable<P extends Record<string, unknown>> {
      constructor(name: string, args: { properties: P; include?: unknown[] });
      readonly properties: P;
    }
    /** Encrypted at rest; linked functions read it with Resource.<Name>.value (never an env var). */
    class Secret {
      constructor(name: string, placeholder?: string);
      readonly name: SstOutput<string>;
      readonly value: SstOutput<string>;
    }

    namespace aws {
      interface FunctionPermission {
        actions: string[];
        resources: SstInput<string>[];
      }
      interface FunctionArgs {
        handler: string;
        description?: string;
        runtime?: "nodejs20.x" | "nodejs22.x";
        architecture?: "x86_64" | "arm64";
        memory?: SstSize;
        /** Ephemeral /tmp size. */
        storage?: SstSize;
        timeout?: SstDuration;
        environment?: Record<string, SstInput<string>>;
        link?: unknown[];
        permissions?: FunctionPermission[];
        layers?: SstInput<string>[];
        copyFiles?: { from: string; to?: string }[];
        nodejs?: {
          install?: string[];
          format?: "esm" | "cjs";
          minify?: boolean;
          /** Dynamically imported modules in chunks of their own (esbuild splitting). */
          splitting?: boolean;
          esbuild?: { external?: string[] };
          loader?: Record<string, string>;
        };
        concurrency?: { provisioned?: number; reserved?: number };
        versioning?: boolean;
        /** Async (S3 event) retries, 0-2. */
        retries?: number;
        logging?: { retention?: string; format?: "text" | "json" };
      }
      // biome-ignore lint/suspicious/noShadowRestrictedNames: SST names its component sst.aws.Function
      class Function {
        constructor(name: string, args: FunctionArgs);
        readonly name: SstOutput<string>;
        readonly arn: SstOutput<string>;
        readonly nodes: { readonly function: { readonly version: SstOutput<string> } };
      }

      interface BucketNotification {
        name: string;
        function: SstInput<string>;
        events: ("s3:ObjectCreated:*" | "s3:ObjectRemoved:*")[];
        filterPrefix?: string;
        filterSuffix?: string;
      }
      class Bucket {
        constructor(name: string, args?: { cors?: false; transform?: Record<string, unknown> });
        readonly name: SstOutput<string>;
        readonly arn: SstOutput<string>;
        notify(args: { notifications: BucketNotification[] }): unknown;
      }

      interface ApiGatewayV2Args {
        cors?:
          | boolean
          | {
              allowOrigins?: string[];
              allowMethods?: ("*" | "GET" | "POST" | "OPTIONS" | "HEAD")[];
              allowHeaders?: string[];
              exposeHeaders?: string[];
              maxAge?: SstDuration | "1 day";
            };
        accessLog?: { retention?: string };
        transform?: {
          stage?: { defaultRouteSettings?: { throttlingBurstLimit?: number; throttlingRateLimit?: number } };
        };
      }
      class ApiGatewayV2 {
        constructor(name: string, args?: ApiGatewayV2Args);
        readonly url: SstOutput<string>;
        /** handler: a function ARN, so every route shares one function. */
        route(route: string, handler: SstInput<string>): unknown;
      }

      class Vpc {
        constructor(name: string, args?: { nat?: "managed" | "ec2"; az?: number });
      }
      class Cluster {
        constructor(name: string, args: { vpc: Vpc });
      }

      type ServicePort = `${number}/${"http" | "https"}`;
      interface ServiceArgs {
        cluster: Cluster;
        image: { context: string; dockerfile: string; args?: Record<string, string> };
        architecture?: "x86_64" | "arm64";
        cpu?: `${number} vCPU`;
        memory?: `${number} GB`;
        storage?: `${number} GB`;
        /** ECS Managed Instances with a GPU host, e.g. "nvidia/t4" (g4dn), "nvidia/a10g" (g5). */
        gpu?: string;
        environment?: Record<string, SstInput<string>>;
        /** Env var → SSM parameter / Secrets Manager ARN, resolved by ECS when the task starts. */
        ssm?: Record<string, SstInput<string>>;
        link?: unknown[];
        loadBalancer?: {
          public?: boolean;
          domain?: string;
          rules: { listen: ServicePort; forward?: ServicePort; redirect?: ServicePort }[];
          health?: Partial<Record<ServicePort, { path?: string; interval?: SstDuration; timeout?: SstDuration }>>;
        };
        scaling?: {
          min?: number;
          max?: number;
          cpuUtilization?: false | number;
          memoryUtilization?: false | number;
          requestCount?: false | number;
          scaleInCooldown?: SstDuration;
          scaleOutCooldown?: SstDuration;
        };
        health?: { command: string[]; startPeriod?: SstDuration; interval?: SstDuration; retries?: number };
        dev?: false | { command?: string; url?: string; autostart?: boolean };
        wait?: boolean;
      }
      /** An IAM permission a Linkable grants the functions it is linked to. */
      function permission(args: { actions: string[]; resources: SstInput<string>[] }): unknown;
      class Service {
        constructor(name: string, args: ServiceArgs);
        readonly url: SstOutput<string>;
      }
    }
  }
}
