// The gateway's wire contract (schemas/gateway.proto), read by protobufjs from the very
// .proto file the Python side compiles: the bundle inlines its text, so the two cannot
// drift apart.
import protobuf from "protobufjs";
import protoText from "../../../schemas/gateway.proto";

// Ids, ticks and quantized coordinates are int64 on the wire. Without Long, protobufjs
// decodes them to plain numbers: exact below 2^53, which covers every id the platform
// hands out and a quantized coordinate of 9e10 AU at the default grid.
protobuf.util.Long = null;
protobuf.configure();

const root = protobuf.parse(protoText, { keepCase: false }).root;
const ns = "cosmicgarden.gateway.v1.";
export const Frame = root.lookupType(ns + "Frame");
export const ClientMessage = root.lookupType(ns + "ClientMessage");
export const Encoding = root.lookupEnum(ns + "Encoding").values;

export const KINDS = ["STAR", "PLANET", "MOON", "ASTEROID"];

export function decodeFrame(bytes) {
  return Frame.decode(bytes);
}

export function subscribeMessage({ worldId, center, radius, session, resumeTick }) {
  return ClientMessage.encode({
    subscribe: {
      worldId,
      view: { center: { x: center[0], y: center[1], z: center[2] }, radius },
      session,
      resumeTick: resumeTick || 0,
      encoding: Encoding.PREDICTED,
    },
  }).finish();
}

export function moveMessage(center, radius) {
  return ClientMessage.encode({
    move: { center: { x: center[0], y: center[1], z: center[2] }, radius },
  }).finish();
}
