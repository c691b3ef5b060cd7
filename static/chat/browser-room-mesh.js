// @ts-check
// One room's view of the page's mesh: the JavaScript twin of peer_agent/room_mesh.py.
//
// The page holds one Mesh (browser-mesh.js: one RTCPeerConnection and data channel per other
// device) for every room it is in. Each room (a BrowserPeer) sees it through a RoomMesh: its
// own roster, the links to the devices on it, and `send`/`broadcast` that tag every frame
// with the room (protocol/channel.js `tagRoom`) and reach only the room's devices. The page
// links to a device while any room lists it, so a second room shared with a linked device
// opens nothing new, and a room that drops a device closes the link only when no other room
// lists it.

import { tagRoom } from "./protocol/channel.js";
import { LinkState } from "./browser-mesh.js";

/** @typedef {import("./browser-mesh.js").Peer} Peer */
/** @typedef {import("./browser-mesh.js").Mesh} Mesh */

/**
 * What a room's view needs of the page's device (browser-device.js).
 * @typedef {{mesh: Mesh, rosterChanged(): void, admitted(room: string, device: string): void}}
 *   MeshOwner
 */

export class RoomMesh {
  /**
   * @param {MeshOwner} owner
   * @param {string} room
   * @param {(peer: Peer, state: string) => void} onLink
   */
  constructor(owner, room, onLink) {
    this.owner = owner;
    this.room = room;
    /** @type {Map<string, Peer>} device -> peer, as this room lists them */
    this.peers = new Map();
    this.onLink = onLink;
  }

  get mesh() {
    return this.owner.mesh;
  }

  /** The links to this room's devices, by device id. */
  get links() {
    const links = new Map();
    for (const [device, link] of this.mesh.links) if (this.peers.has(device)) links.set(device, link);
    return links;
  }

  /**
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    this.mesh.setIceServers(iceServers);
  }

  /**
   * This room's roster is `peers`; the page's mesh links to every room's devices. A device
   * this room adds that another room has linked already is reported up at once: the room
   * starts its exchange (digests, keys) over the link it now shares.
   * @param {Iterable<Peer>} peers
   */
  updateRoster(peers) {
    const before = new Set(this.peers.keys());
    this.peers = new Map();
    for (const peer of peers) if (peer.device !== this.mesh.device) this.peers.set(peer.device, peer);
    this.owner.rosterChanged();
    for (const device of this.peers.keys()) {
      if (before.has(device)) continue;
      const link = this.mesh.links.get(device);
      if (link && link.state === LinkState.CONNECTED) this.onLink(link.peer, LinkState.CONNECTED);
      this.owner.admitted(this.room, device);
    }
  }

  /**
   * @param {string} device
   */
  nudge(device) {
    return this.peers.has(device) && this.mesh.nudge(device);
  }

  /**
   * The room no longer lists `device`: its link closes unless another room lists it.
   * @param {string} device
   */
  peerLeft(device) {
    if (this.peers.delete(device)) this.owner.rosterChanged();
  }

  /**
   * A signal that came through this room.
   * @param {string} fromUser
   * @param {string} fromDevice
   * @param {string} kind
   * @param {any} payload untrusted
   */
  handleSignal(fromUser, fromDevice, kind, payload) {
    return this.mesh.handleSignal(fromUser, fromDevice, kind, payload, this.room);
  }

  /**
   * Send a frame of this room to one of its devices; false if it is not linked.
   * @param {string} device
   * @param {string} text
   */
  send(device, text) {
    return this.peers.has(device) && this.mesh.send(device, tagRoom(text, this.room));
  }

  /**
   * Send a frame of this room to each of its linked devices; the devices it went to.
   * @param {string} text
   */
  broadcast(text) {
    const tagged = tagRoom(text, this.room);
    this.mesh.checkSize(tagged);
    return [...this.peers.keys()].filter((device) => this.mesh.send(device, tagged));
  }

  /**
   * Wait until `device`'s channel can take more (false if it is gone or not this room's).
   * @param {string} device
   */
  async drained(device) {
    return this.peers.has(device) && this.mesh.drained(device);
  }

  /** The room is left: it lists no device any more. */
  close() {
    this.peers.clear();
    this.owner.rosterChanged();
  }
}
