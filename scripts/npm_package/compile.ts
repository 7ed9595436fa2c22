/**
 * Compiles the Deno sources to ESM JavaScript for Node with the TypeScript compiler: `.ts` import
 * specifiers become `.js` (in the declarations too), `npm:` specifiers become bare package names,
 * and packages resolve from `npm/node_modules`, exactly as the built package will see them.
 *
 * @module
 */

import { dirname, relative, resolve } from "node:path";
import ts from "typescript";
import { parseNpmSpecifier } from "./config.ts";

/** What to compile, and where to. */
export interface CompileInput {
  /** The repository root; the output mirrors its layout. */
  root: string;
  /** Where compiled files go (`npm/esm`). */
  outDir: string;
  /** A directory whose `node_modules` holds the packages (`npm`). */
  packagesDir: string;
  /** The package's entry points (absolute paths): emitted with declarations. */
  entryPoints: readonly string[];
  /** Test files (absolute paths): emitted without declarations, with what they reach outside the package. */
  tests: readonly string[];
}

/** TypeScript reports problems here: compilation stops on any of them. */
export class CompileError extends Error {
  /** @param report The formatted diagnostics. */
  constructor(report: string) {
    super(`TypeScript found problems:\n${report}`);
    this.name = "CompileError";
  }
}

function baseOptions(input: CompileInput): ts.CompilerOptions {
  return {
    // Node 20 runs ES2022 natively; `await using` is lowered (Node 20 has Symbol.asyncDispose).
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    moduleDetection: ts.ModuleDetectionKind.Force,
    // The web types Deno has too (events, WebSocket, Request): the sources are written against
    // them. Whether the published declarations need more than ES2022 and @types/node is checked
    // by a consumer without them (checks.ts); whether Node has them at run time, by the tests.
    lib: ["lib.es2022.d.ts", "lib.esnext.disposable.d.ts", "lib.dom.d.ts"],
    types: ["node"],
    typeRoots: [`${input.packagesDir}/node_modules/@types`],
    rewriteRelativeImportExtensions: true,
    verbatimModuleSyntax: true,
    strict: true,
    skipLibCheck: true,
    sourceMap: true,
    inlineSources: true,
    newLine: ts.NewLineKind.LineFeed,
    rootDir: input.root,
    outDir: input.outDir,
  };
}

/** `./a.ts` → `./a.js` (relative only), `npm:x@1/y` → `x/y`; anything else unchanged. */
export function rewriteSpecifier(specifier: string): string {
  const npm = parseNpmSpecifier(specifier);
  if (npm !== undefined) return npm.name + npm.subpath;
  if (/^\.\.?\//.test(specifier)) {
    return specifier.replace(/\.ts$/, ".js").replace(/\.mts$/, ".mjs").replace(/\.tsx$/, ".js");
  }
  return specifier;
}

/** Resolves packages from `packagesDir/node_modules` and `npm:` specifiers as their bare names. */
function createHost(options: ts.CompilerOptions, input: CompileInput): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true);
  const packageAnchor = `${input.outDir}/index.ts`;
  host.resolveModuleNameLiterals = (literals, containingFile, redirected, compilerOptions) =>
    literals.map((literal) => {
      const relative = /^\.\.?\//.test(literal.text);
      return ts.resolveModuleName(
        relative ? literal.text : rewriteSpecifier(literal.text),
        relative ? containingFile : packageAnchor,
        compilerOptions,
        host,
        undefined,
        redirected,
      );
    });
  return host;
}

/** A transformer that rewrites module specifiers with {@link rewriteSpecifier}. */
function specifierTransformer(
  context: ts.TransformationContext,
): (node: ts.SourceFile | ts.Bundle) => ts.SourceFile | ts.Bundle {
  const { factory } = context;
  const literal = (node: ts.Expression | undefined) =>
    node !== undefined && ts.isStringLiteral(node) && rewriteSpecifier(node.text) !== node.text
      ? factory.createStringLiteral(rewriteSpecifier(node.text))
      : node;
  const visit = (node: ts.Node): ts.Node => {
    if (ts.isImportDeclaration(node)) {
      return factory.updateImportDeclaration(
        node,
        node.modifiers,
        node.importClause,
        literal(node.moduleSpecifier)!,
        node.attributes,
      );
    }
    if (ts.isExportDeclaration(node)) {
      return factory.updateExportDeclaration(
        node,
        node.modifiers,
        node.isTypeOnly,
        node.exportClause,
        literal(node.moduleSpecifier),
        node.attributes,
      );
    }
    if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const argument = factory.updateLiteralTypeNode(
        node.argument,
        literal(node.argument.literal as ts.StringLiteral) as ts.StringLiteral,
      );
      return ts.visitEachChild(
        factory.updateImportTypeNode(
          node,
          argument,
          node.attributes,
          node.qualifier,
          node.typeArguments,
          node.isTypeOf,
        ),
        visit,
        context,
      );
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [first, ...rest] = node.arguments;
      return factory.updateCallExpression(node, node.expression, node.typeArguments, [
        literal(ts.visitNode(first, visit) as ts.Expression)!,
        ...rest,
      ]);
    }
    return ts.visitEachChild(node, visit, context);
  };
  return (node) => ts.visitNode(node, visit) as ts.SourceFile | ts.Bundle;
}

const transformers: ts.CustomTransformers = {
  before: [specifierTransformer as ts.TransformerFactory<ts.SourceFile>],
  afterDeclarations: [specifierTransformer],
};

/**
 * "Could not find a declaration file for module": Deno lets an npm package without types be
 * `any`, so the compile does too. Should such a type reach the published declarations, the
 * consumer check fails.
 */
const UNTYPED_PACKAGE = 7016;

function check(program: ts.Program, files: readonly ts.SourceFile[], host: ts.CompilerHost) {
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...files.flatMap((file) => [
      ...program.getSyntacticDiagnostics(file),
      ...program.getSemanticDiagnostics(file),
      ...(program.getCompilerOptions().declaration ? program.getDeclarationDiagnostics(file) : []),
    ]),
  ].filter((diagnostic) => diagnostic.code !== UNTYPED_PACKAGE);
  if (diagnostics.length > 0) {
    throw new CompileError(ts.formatDiagnosticsWithColorAndContext(diagnostics, host));
  }
}

/**
 * Source maps point at the sources as if they sat in the package root (`backends/local.ts`), not
 * at the repository the package was built in: stack traces then read
 * `…/@momotor/shared-state/backends/local.ts`. The sources themselves are inlined in the maps.
 */
function sourceMapWriter(input: CompileInput): ts.WriteFileCallback {
  const packageRoot = dirname(input.outDir);
  return (fileName, text, writeByteOrderMark) => {
    if (fileName.endsWith(".map")) {
      const map = JSON.parse(text);
      const mapDir = dirname(fileName);
      map.sources = map.sources.map((source: string) =>
        relative(mapDir, resolve(packageRoot, relative(input.root, resolve(mapDir, source))))
      );
      text = JSON.stringify(map);
    }
    ts.sys.writeFile(fileName, text, writeByteOrderMark);
  };
}

function emit(
  program: ts.Program,
  files: readonly ts.SourceFile[],
  host: ts.CompilerHost,
  input: CompileInput,
) {
  const writeFile = sourceMapWriter(input);
  for (const file of files) {
    const result = program.emit(file, writeFile, undefined, false, transformers);
    if (result.diagnostics.length > 0) {
      throw new CompileError(ts.formatDiagnosticsWithColorAndContext(result.diagnostics, host));
    }
  }
}

/** Our own source files of a program (no declarations, nothing from `node_modules`). */
function ownFiles(program: ts.Program, root: string): ts.SourceFile[] {
  return program.getSourceFiles().filter((file) =>
    !file.isDeclarationFile && file.fileName.startsWith(`${root}/`) &&
    !file.fileName.includes("/node_modules/")
  );
}

/**
 * Type-checks and emits the package (with declarations; `isolatedDeclarations` rejects what JSR
 * calls slow types), then the tests against it.
 *
 * @returns The source files of the package, as absolute paths.
 * @throws {CompileError} on any diagnostic.
 */
export function compile(input: CompileInput): string[] {
  const packageOptions: ts.CompilerOptions = {
    ...baseOptions(input),
    declaration: true,
    isolatedDeclarations: true,
  };
  const packageHost = createHost(packageOptions, input);
  const packageProgram = ts.createProgram({
    rootNames: input.entryPoints,
    options: packageOptions,
    host: packageHost,
  });
  const packageFiles = ownFiles(packageProgram, input.root);
  check(packageProgram, packageFiles, packageHost);
  emit(packageProgram, packageFiles, packageHost, input);

  const testOptions = baseOptions(input);
  const testHost = createHost(testOptions, input);
  const testProgram = ts.createProgram({
    rootNames: input.tests,
    options: testOptions,
    host: testHost,
  });
  const packagePaths = new Set(packageFiles.map((file) => file.fileName));
  const testFiles = ownFiles(testProgram, input.root).filter((file) =>
    !packagePaths.has(file.fileName)
  );
  check(testProgram, testFiles, testHost);
  emit(testProgram, testFiles, testHost, input);
  return [...packagePaths];
}
