/**
 * A loopback key server speaking AWS KMS's wire protocol (JSON 1.1 over HTTP:
 * `X-Amz-Target: TrentService.<Operation>`, base64 blobs, errors as
 * `{"__type": …, "message": …}` with status 400), for driving the real
 * `@aws-sdk/client-kms` in tests where no KMS emulator is available.
 *
 * It keeps one AES-256 key per KMS key, in memory. A ciphertext blob is
 * `"CKMS" ‖ key uuid (36) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16)` with
 * the canonical encryption context as associated data, so — as with real KMS —
 * decrypting under another context fails with InvalidCiphertextException.
 * Requests must carry a SigV4 Authorization header whose credential scope names
 * the service `kms` and a known access key; the region in that scope goes into
 * the ARNs of keys created through it. Disabled keys refuse every operation.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';

const ACCOUNT = '111122223333';
const MAGIC = Buffer.from('CKMS');

interface KmsKey {
  id: string;
  arn: string;
  material: Buffer;
  enabled: boolean;
  description: string;
  created: number;
  /** ScheduleKeyDeletion was called (and not cancelled): unusable, shown as PendingDeletion. */
  pendingDeletion?: boolean;
}

class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

export class KmsTestServer {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  private readonly keys = new Map<string, KmsKey>();
  private readonly server: Server;
  /** Operations served, by name (for assertions on what a command asked KMS for). */
  readonly calls: Record<string, number> = {};
  endpoint = '';

  private constructor(credentials: { accessKeyId: string; secretAccessKey: string }) {
    this.accessKeyId = credentials.accessKeyId;
    this.secretAccessKey = credentials.secretAccessKey;
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  static async start(credentials = { accessKeyId: 'KMSTEST' + randomBytes(6).toString('hex').toUpperCase(), secretAccessKey: randomBytes(20).toString('base64url') }): Promise<KmsTestServer> {
    const s = new KmsTestServer(credentials);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.endpoint = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
    return s;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** A new key in `region`, made as an operator would (CreateKey through the AWS SDK); resolves to its ARN. */
  async createKey(region = 'us-east-1', description = ''): Promise<string> {
    const client = new KMSClient({ region, endpoint: this.endpoint, credentials: { accessKeyId: this.accessKeyId, secretAccessKey: this.secretAccessKey } });
    try {
      return (await client.send(new CreateKeyCommand({ Description: description }))).KeyMetadata!.Arn!;
    } finally {
      client.destroy();
    }
  }

  /** Disables a key as an operator would (DisableKey); every later use fails with DisabledException. */
  setEnabled(keyIdOrArn: string, enabled: boolean): void {
    this.find(keyIdOrArn).enabled = enabled;
  }

  private find(ref: unknown): KmsKey {
    if (typeof ref !== 'string' || ref === '') throw new KmsFault('ValidationException', 'KeyId is required');
    const id = ref.startsWith('arn:') ? ref.slice(ref.lastIndexOf('/') + 1) : ref;
    const key = this.keys.get(id);
    if (!key) throw new KmsFault('NotFoundException', `Key '${ref}' does not exist`);
    return key;
  }

  private usable(ref: unknown): KmsKey {
    const key = this.find(ref);
    if (!key.enabled) throw new KmsFault('DisabledException', `${key.arn} is disabled.`);
    return key;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: Json) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(text), 'x-amzn-requestid': randomUUID() });
      res.end(text);
    };
    try {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (req.method !== 'POST' || !target.startsWith('TrentService.')) throw new KmsFault('UnknownOperationException', `unknown target ${target}`);
      const region = this.authorise(String(req.headers.authorization ?? ''));
      const op = target.slice('TrentService.'.length);
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Json;
      this.calls[op] = (this.calls[op] ?? 0) + 1;
      reply(200, this.operate(op, input, region));
    } catch (e) {
      if (e instanceof KmsFault) reply(400, { __type: e.type, message: e.message });
      else reply(500, { __type: 'KMSInternalException', message: (e as Error).message });
    }
  }

  /** Checks the SigV4 credential scope; returns its region. */
  private authorise(authorization: string): string {
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([a-z0-9-]+)\/kms\/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$/.exec(authorization);
    if (!m) throw new KmsFault('IncompleteSignatureException', 'request is not signed with SigV4 for kms');
    if (m[1] !== this.accessKeyId) throw new KmsFault('UnrecognizedClientException', 'The security token included in the request is invalid.');
    return m[2]!;
  }

  private operate(op: string, input: Json, region: string): Json {
    switch (op) {
      case 'CreateKey': {
        const id = randomUUID();
        const key: KmsKey = { id, arn: `arn:aws:kms:${region}:${ACCOUNT}:key/${id}`, material: randomBytes(32), enabled: true, description: String(input.Description ?? ''), created: Date.now() / 1000 };
        this.keys.set(id, key);
        return { KeyMetadata: metadata(key) };
      }
      case 'DescribeKey':
        return { KeyMetadata: metadata(this.find(input.KeyId)) };
      case 'ScheduleKeyDeletion': {
        const key = this.find(input.KeyId);
        key.pendingDeletion = true;
        key.enabled = false;
        return { KeyId: key.arn, KeyState: 'PendingDeletion', DeletionDate: Date.now() / 1000 + 7 * 86400 };
      }
      case 'CancelKeyDeletion': {
        const key = this.find(input.KeyId);
        key.pendingDeletion = false;
        return { KeyId: key.arn };
      }
      case 'DisableKey':
      case 'EnableKey':
        this.find(input.KeyId).enabled = op === 'EnableKey';
        return {};
      case 'GenerateDataKey': {
        const key = this.usable(input.KeyId);
        const bytes = input.NumberOfBytes !== undefined ? Number(input.NumberOfBytes) : input.KeySpec === 'AES_128' ? 16 : input.KeySpec === 'AES_256' ? 32 : NaN;
        if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024) throw new KmsFault('ValidationException', 'KeySpec or NumberOfBytes is required');
        const plaintext = randomBytes(bytes);
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), CiphertextBlob: seal(key, plaintext, input.EncryptionContext).toString('base64') };
      }
      case 'Encrypt': {
        const key = this.usable(input.KeyId);
        const plaintext = blob(input.Plaintext, 'Plaintext');
        if (plaintext.length > 4096) throw new KmsFault('ValidationException', 'Plaintext is longer than 4096 bytes');
        return { KeyId: key.arn, CiphertextBlob: seal(key, plaintext, input.EncryptionContext).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'Decrypt': {
        const { key, plaintext } = this.open(input.CiphertextBlob, input.EncryptionContext, input.KeyId);
        return { KeyId: key.arn, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'ReEncrypt': {
        const { key: source, plaintext } = this.open(input.CiphertextBlob, input.SourceEncryptionContext, input.SourceKeyId);
        const dest = this.usable(input.DestinationKeyId);
        return { SourceKeyId: source.arn, KeyId: dest.arn, CiphertextBlob: seal(dest, plaintext, input.DestinationEncryptionContext).toString('base64') };
      }
      default:
        throw new KmsFault('UnknownOperationException', `operation ${op} is not served by this test server`);
    }
  }

  private open(ciphertext: unknown, context: unknown, keyId: unknown): { key: KmsKey; plaintext: Buffer } {
    const bytes = blob(ciphertext, 'CiphertextBlob');
    if (bytes.length < 4 + 36 + 12 + 16 || !bytes.subarray(0, 4).equals(MAGIC)) throw new KmsFault('InvalidCiphertextException', 'ciphertext is not a KMS ciphertext');
    const key = this.usable(bytes.subarray(4, 40).toString('latin1'));
    if (keyId !== undefined && this.find(keyId).id !== key.id) throw new KmsFault('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
    const d = createDecipheriv('aes-256-gcm', key.material, bytes.subarray(40, 52));
    d.setAAD(canonicalContext(context));
    d.setAuthTag(bytes.subarray(bytes.length - 16));
    try {
      return { key, plaintext: Buffer.concat([d.update(bytes.subarray(52, bytes.length - 16)), d.final()]) };
    } catch {
      throw new KmsFault('InvalidCiphertextException', '');
    }
  }
}

function seal(key: KmsKey, plaintext: Buffer, context: unknown): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key.material, nonce);
  c.setAAD(canonicalContext(context));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([MAGIC, Buffer.from(key.id, 'latin1'), nonce, body, c.getAuthTag()]);
}

function blob(v: unknown, field: string): Buffer {
  if (typeof v !== 'string' || v === '') throw new KmsFault('ValidationException', `${field} is required`);
  return Buffer.from(v, 'base64');
}

function canonicalContext(context: unknown): Buffer {
  const entries = Object.entries((context ?? {}) as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries));
}

function metadata(key: KmsKey): Json {
  return {
    AWSAccountId: ACCOUNT,
    KeyId: key.id,
    Arn: key.arn,
    CreationDate: key.created,
    Enabled: key.enabled,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: key.pendingDeletion ? 'PendingDeletion' : key.enabled ? 'Enabled' : 'Disabled',
    KeySpec: 'SYMMETRIC_DEFAULT',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
  };
}
