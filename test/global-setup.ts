// Runs once before the suite: nothing to start globally; integration tests start their own
// s3rver / HTTP servers on ephemeral loopback ports so files can run in parallel.
export default function setup(): void {}
