// The types of the Socket.IO client bundle that scripts/bootstrap copies beside this file: tsc
// reads a declaration before a .js of the same name, so `make lint` checks static/chat/ against
// the types the same pinned socket.io-client package ships instead of the minified bundle.
export * from "socket.io-client";
